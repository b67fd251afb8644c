"""``python3 start_sprocket.py PROG PYC ARGS...`` runs ``python3 PROG ARGS...`` from bytecode.

Python compiles a script on every start and never caches its bytecode: 0.1 s of CPU for sprocket.py,
most of what a quick test that runs it costs. conftest.py's ``sprocket_argv`` compiles sprocket.py once
per session into PYC (a hash-checked .pyc) and starts it through this file, which runs that code as
Python runs a script: in a fresh ``__main__`` whose ``__file__`` is PROG, with ``sys.argv`` = [PROG,
ARGS...] and PROG's directory first on ``sys.path``, in this same process (same pid, signals, exit
status, environment). PROG may be a copy of sprocket.py elsewhere: the code then names the copy. When
PROG's text is not the text PYC was compiled from, PROG is compiled, as the script would be.
"""

import importlib.machinery
import importlib.util
import marshal
import os
import sys
import types


def _named(code, filename):
    """``code`` as compiled from ``filename`` (the file name is all compiling elsewhere changes)."""
    consts = tuple(_named(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _code(prog, pyc):
    with open(prog, "rb") as f:
        source = f.read()
    try:
        with open(pyc, "rb") as f:
            data = f.read()
    except OSError:
        data = b""
    # A hash-checked .pyc: magic number, flags, the source's hash, then the marshalled code.
    if data[:4] != importlib.util.MAGIC_NUMBER or data[8:16] != importlib.util.source_hash(source):
        return compile(source, prog, "exec")
    code = marshal.loads(data[16:])
    return code if code.co_filename == prog else _named(code, prog)


def main():
    prog, pyc = sys.argv[1:3]
    code = _code(prog, pyc)
    module = types.ModuleType("__main__")
    module.__file__, module.__cached__, module.__builtins__ = prog, None, __builtins__
    module.__loader__ = importlib.machinery.SourceFileLoader("__main__", prog)
    sys.modules["__main__"] = module
    sys.argv[:3] = [prog]
    sys.path[0] = os.path.dirname(os.path.realpath(prog))
    exec(code, module.__dict__)


main()
