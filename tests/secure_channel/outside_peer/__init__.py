"""A second implementation of the secure channel, written from docs/secure-channel.md alone.

It imports nothing from the project's packages: only ``cryptography`` and ``cbor2``. Its
purpose is to show that the published page and vectors are enough to interoperate; every place
the page left a choice open is listed in GUESSES.md beside it.
"""
