"""Where a model comes from: released weights by name (:mod:`.released`), checkpoint files
(:mod:`.checkpoints`, :mod:`.files`), the Hugging Face Hub (:mod:`.hub`), and :func:`load_model` /
:func:`create_model` (:mod:`.load`). The model classes import nothing from here."""
