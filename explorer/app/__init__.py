"""What the window and the fine-tune wizard decide, without Qt and without torch at import: tested without a display.

`analysis` turns the engine's answers into what the views draw (plot data sorted and sampled off the GUI thread);
`export` writes results out; `fine_tune` holds the wizard's work (folder checks, the training plan, estimates,
saving). `explorer.ui` is the PySide6 layer over these.
"""
