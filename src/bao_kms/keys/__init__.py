"""The Transit key as the provider sees it: the safe profile, lineage, rotation and the version
registry that remembers versions across restarts."""
