"""tools.phone_read: the mel reader's phone error rate on true mels and on a DVAE's decodings."""

from types import SimpleNamespace

import torch

from tools.phone_read import TRUE, read_voice
from tts import audio
from tts.models.reader import MelReader, MelReaderConfig


class Identity:
    """A 'DVAE' whose decoding is the mel itself (one code per frame)."""

    config = SimpleNamespace(downsample_factor=1)
    conditioned = False

    def encode(self, mel):
        return mel

    def decode(self, codes, speaker):
        return codes


class Silence(Identity):
    def decode(self, codes, speaker):
        return torch.full_like(codes, -1.0)


def test_a_decoder_that_gives_back_the_mel_reads_as_the_true_mel():
    torch.manual_seed(0)
    reader = MelReader(MelReaderConfig(classes=5, channels=8, dilations=(1,))).eval()
    mels = [audio.denormalize_mel(torch.rand(1, 80, n) * 2 - 1) for n in (9, 14)]
    phones = [[1, 2, 3], [4, 4]]
    rates = read_voice(reader, {"same": Identity(), "silent": Silence()}, mels, phones, {})
    assert set(rates) == {TRUE, "same", "silent"}
    assert rates["same"] == rates[TRUE] and 0 <= rates[TRUE] <= 2
