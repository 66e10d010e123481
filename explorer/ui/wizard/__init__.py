"""The fine-tune wizard (PySide6): one page per module, the wizard itself in `fine_tune_wizard`.

Each page only turns worker results into widgets: scanning, measuring, training, evaluating and saving all run as
`Job`s on the wizard's runners (explorer.ui.workers) over `explorer.app.fine_tune`, and every update reaches the
widgets through the jobs' queued signals. The pages share state through the wizard object (`FineTuneWizard`), not
through QWizard's string-keyed fields, so types survive.
"""

from explorer.ui.wizard.fine_tune_wizard import FineTuneWizard

__all__ = ["FineTuneWizard"]
