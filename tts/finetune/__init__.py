"""Fine-tuning a voice on a CPU (`tts voices finetune NAME`): the model's conditioning vectors for one
voice, tuned to its clips with every weight frozen, stored as a small adapter (tts.adapters) that
inference applies by itself.

    tts.finetune.config     FinetuneConfig: steps, minutes, learning rate, ...
    tts.finetune.clips      the voice's clips, their texts (a transcript file, or the speech recogniser)
    tts.finetune.judges     the optional recogniser and speaker judge
    tts.finetune.objective  the losses the vectors learn from
    tts.finetune.state      the resumable state of an unfinished run
    tts.finetune.run        finetune(): one run, judged on a held-out clip

Training code of its own: inference reads adapters through tts.adapters and never imports this
package. Importing this package itself imports nothing heavy (the command line reads its defaults).
"""
