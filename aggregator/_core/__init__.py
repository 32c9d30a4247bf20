"""The sans-I/O core: framing, protocols, the engine, accumulators, models, limits, errors.

Nothing here does I/O, reads a clock or imports an event loop: a test imports each module in a
fresh interpreter and checks that only the standard library, attrs, cattrs, orjson and this
package were loaded. The async shell (``aggregator._run``, ``_tee``, ``_cli``, ``sources``)
drives it.
"""
