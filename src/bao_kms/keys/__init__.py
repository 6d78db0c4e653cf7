"""The Transit key as the provider sees it: the safe profile, lineage and (later) rotation."""
