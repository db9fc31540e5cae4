"""``python -m emu_dgl ...`` runs the ``emu-dgl`` command (the form ``torchrun -m emu_dgl`` needs)."""

from emu_dgl.cli import main

main()
