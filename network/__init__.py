"""The manufacturing network: cells bid for jobs, build them, prove what they built, and are paid from escrow.

Pure Python beside the agent executive (it imports the vocabulary, the
planners and Zenoh, never the agent or ROS): the CLI plugs the agent's
runners into a cell node, and the ROS bridge plugs a cell agent's API in.

* :mod:`.identity`: Ed25519 identities, signed messages and the guard that
  refuses bad signatures, unknown keys, replays and stale messages;
* :mod:`.records`: per-unit as-built records (in-toto Statement in a DSSE
  envelope), hash-chained per cell, verified offline;
* :mod:`.store` and :mod:`.market`: the exchange's durable contracts, the
  double-entry escrow ledger and the market state machine;
* :mod:`.bidding`: a cell's bid from its own quote, with a plan cache;
* :mod:`.transport`, :mod:`.cell_node`, :mod:`.exchange_node`, :mod:`.buyer`:
  the participants over Eclipse Zenoh;
* :mod:`.demo`: an exchange and N cells on this machine.
"""
