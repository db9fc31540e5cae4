"""Everything about the package is in pyproject.toml; this file only adds the startup hook.

``emu_dgl/emu_dgl_dgl_fix.pth`` is installed at the top of site-packages, where Python
runs it at start-up: it registers an import hook that, when ``dgl`` is first imported,
imports ``emu_dgl._dgl`` (the fixes DGL 2.1.0 needs beside a current torch) before DGL
itself. So a plain ``import dgl`` works in any order, in any process of the environment.
A version pin cannot do this: DGL 2.1.0's GraphBolt library exists only for torch 2.0.0
to 2.2.1 (see emu_dgl/_dgl.py and README, "In your own code").
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

HOOK = "emu_dgl_dgl_fix.pth"


class BuildPyWithStartupHook(build_py):
    """``build_py`` that also places the hook at the top of the wheel (site-packages)."""

    def run(self) -> None:
        super().run()
        # An editable wheel keeps the modules in the source tree, but the hook must still
        # reach site-packages: the root of the wheel being built is install_lib then.
        top = (
            self.get_finalized_command("install").install_lib
            if self.editable_mode
            else self.build_lib
        )
        self.copy_file(os.path.join("emu_dgl", HOOK), os.path.join(top, HOOK), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else [*outputs, os.path.join(self.build_lib, HOOK)]


setup(cmdclass={"build_py": BuildPyWithStartupHook})
