"""What every feature's Telegram edge shares: the dependencies a callback reads (``context``),
one way to send a rule's replies (``render``), and how a message is recorded as it arrives
(``inbound``). Only the features' ``telegram`` modules import this package."""
