"""The commands users run (console scripts of the installed package, and the checkout's top-level scripts)."""
