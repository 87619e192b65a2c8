"""Tests of this component (a package, so that its package-scoped fixtures end with it)."""
