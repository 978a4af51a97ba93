"""toolformer: teach a language model to use tools (Schick et al., 2023), stage by stage."""

__version__ = "0.1.0"
