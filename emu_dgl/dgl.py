"""``import emu_dgl.dgl``: DGL itself, imported after the fixes of :mod:`emu_dgl._dgl`.

``import emu_dgl.dgl as dgl`` and ``from emu_dgl import dgl`` give the very module a plain
``import dgl`` gives (this module replaces itself with it), for code that wants to say
where its DGL comes from.
"""

from __future__ import annotations

import sys

from emu_dgl._dgl import dgl

sys.modules[__name__] = dgl  # the import statement hands out what sys.modules holds
