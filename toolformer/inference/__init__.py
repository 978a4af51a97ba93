"""Decoding with live tools on the LM backend: ToolDecoder and `generate` (decoder.py), ToolBox
and offer_tools (toolbox.py)."""
from toolformer.inference.decoder import Generation, ToolDecoder, generate
from toolformer.inference.toolbox import ToolBox, offer_tools

__all__ = ["Generation", "ToolBox", "ToolDecoder", "generate", "offer_tools"]
