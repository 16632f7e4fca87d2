"""placeholder"""
import argparse
def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pass
