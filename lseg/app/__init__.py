"""User-facing apps: the Gradio web demo (:mod:`lseg.app.demo`, needs ``lseg[demo]``) and the model
card template used by :meth:`lseg.LSeg.save_pretrained` (``model_card.md``).

Importing this package does not import Gradio.
"""
