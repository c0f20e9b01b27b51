"""The commands, one module each: parse (the options are declared in cli/options.py), make
one `UpbitCache` call, render. `cli/group.py` registers them; errors are its business (one
boundary), so a command raises the library's errors as they come.

The manager (and with it pyarrow) is imported inside the commands: `--help` and
`--version` need neither.
"""
