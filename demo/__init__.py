"""A small event-driven shop that produces real traffic, spans, lag, versions and dead letters.

    stats = await demo.run(demo.DemoConfig(count=100))
"""
from demo.config import DemoConfig, add_arguments, config_from_options
from demo.shop import DemoStats, run

__all__ = ["DemoConfig", "DemoStats", "add_arguments", "config_from_options", "run"]
