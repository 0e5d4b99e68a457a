"""Helpers shared by the tests: throwaway workspaces, real servers, killing stages, small models."""
