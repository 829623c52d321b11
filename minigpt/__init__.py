"""minigpt: every idea of GPT-3 in small modules that a chapter of the book teaches.

Chapter by chapter (``help(minigpt.<module>)`` explains each):

1. n-gram language models ............ :mod:`minigpt.ngram`, :mod:`minigpt.data`
2. byte-level BPE tokenization ........ :mod:`minigpt.bpe`, :mod:`minigpt.bpe_formats`
3. gradient descent ................... :mod:`minigpt.autograd`, :mod:`minigpt.optim`,
   :mod:`minigpt.early_stopping`, :mod:`minigpt.hyperparameters`
4. activations and the MLP ............ :mod:`minigpt.activations`
5. LayerNorm and RMSNorm .............. :mod:`minigpt.layernorm`
6. attention .......................... :mod:`minigpt.attention` (a subpackage),
   :mod:`minigpt.positions`
7. the GPT-3 model and its recipe ..... :mod:`minigpt.config`, :mod:`minigpt.model`,
   :mod:`minigpt.train` (the recipe, ``Trainer`` and ``evaluate``), :mod:`minigpt.checkpoint`
   (weights in safetensors, no pickle)
8. decoding ........................... :mod:`minigpt.generate`
9. scaling: compute, memory, laws ..... :mod:`minigpt.scaling`
10. in-context learning ............... :mod:`minigpt.tasks`, :mod:`minigpt.contamination`
11. after GPT-3 ....................... :mod:`minigpt.variants`, :mod:`minigpt.finetune`,
    :mod:`minigpt.energy`, :mod:`minigpt.bias`
12. training on a GPU ................. :mod:`minigpt.precision`, :mod:`minigpt.gpu`,
    :mod:`minigpt.shards` (token shards for larger corpora), :mod:`minigpt.parallel` (a
    subpackage)
13. GPT-3's training data ............. :mod:`minigpt.corpus` (a subpackage: quality
    filtering, fuzzy deduplication, the mixture, how results were scored)

Around them: :mod:`minigpt.book` (the notebooks' helpers: ``show_source``, ``set_seed``,
``controls``) with :mod:`minigpt.widgets` (interactive figures that work on a static page),
:mod:`minigpt.checks` (shared argument checks) and :mod:`minigpt.lab` (the book's experiment
harnesses, toy models and stored results; concept modules never import it).

Importing ``minigpt`` itself loads nothing else (no PyTorch), so it is instant.
"""

__version__ = "0.1.0"
