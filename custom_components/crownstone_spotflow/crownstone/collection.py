"""The shared shape of Spheres, Crownstones, Locations and Users: items keyed by cloud id."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar, Protocol


class CloudItem(Protocol):
    """An item the cloud identifies by id, whose cloud fields a fresh copy can replace."""

    cloud_id: str
    CLOUD_FIELDS: ClassVar[tuple[str, ...]]


class CloudCollection[ItemT: CloudItem]:
    """Items of one kind, keyed by cloud id, that keep their identity across refreshes.

    Entities hold references to items; a refresh updates those objects in place rather than
    replacing them, so the references stay live.
    """

    def __init__(self) -> None:
        """Start empty; a refresh fills the collection."""
        self._items: dict[str, ItemT] = {}

    def __iter__(self) -> Iterator[ItemT]:
        """Iterate over the items."""
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        """Return the number of items."""
        return len(self._items)

    def __contains__(self, cloud_id: object) -> bool:
        """Tell whether an item with this cloud id is known."""
        return cloud_id in self._items

    def find_by_id(self, cloud_id: str) -> ItemT | None:
        """Return the item with this cloud id, or None."""
        return self._items.get(cloud_id)

    def adopt(self, fresh_items: Iterable[ItemT]) -> None:
        """Adopt a complete, already validated listing from the cloud."""
        items: dict[str, ItemT] = {}
        for fresh in fresh_items:
            existing = self._items.get(fresh.cloud_id)
            if existing is None:
                items[fresh.cloud_id] = fresh
            else:
                _copy_cloud_fields(existing, fresh)
                items[fresh.cloud_id] = existing
        self._items = items


def _copy_cloud_fields[ItemT: CloudItem](existing: ItemT, fresh: ItemT) -> None:
    """Copy the cloud fields of a fresh copy, keeping the existing object and its live state."""
    for field in fresh.CLOUD_FIELDS:
        setattr(existing, field, getattr(fresh, field))
