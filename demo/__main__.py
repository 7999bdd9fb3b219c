"""`python -m demo --nats-url nats://127.0.0.1:4222`: the shop without Django."""
import argparse
import asyncio
import json
import logging

from demo import add_arguments, config_from_options, run


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m demo", description="Run the demo shop against a NATS JetStream server."
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = config_from_options(options)
    except ValueError as error:
        parser.error(str(error))
    stats = asyncio.run(run(config))
    print(json.dumps(vars(stats), indent=2))


if __name__ == "__main__":
    main()
