"""Every test here also checks that no finding lacks a product."""

from tests.findings.ownership_check import every_finding_has_a_product

__all__ = ["every_finding_has_a_product"]
