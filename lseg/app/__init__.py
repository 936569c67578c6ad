"""User-facing apps: the Gradio web demo (:mod:`lseg.app.demo`, needs ``lseg[demo]``; importing this
package does not import Gradio)."""
