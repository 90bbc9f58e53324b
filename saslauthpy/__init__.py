"""saslauthpy: a drop-in replacement for Cyrus SASL's saslauthd."""

__version__ = "0.1.0"
