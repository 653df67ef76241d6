"""What every Pushi model shares: compound indexes and batch id reservation."""

from __future__ import annotations

import appier


class PushiBase(appier.Model):
    """Base of the Pushi models: integer ids and compound indexes."""

    id = appier.field(type=int, index=True, increment=True, safe=True)

    compound: tuple[tuple[tuple[str, int], ...], ...] = ()
    """ Compound indexes, each a sequence of (field, direction) pairs """

    @classmethod
    def setup(cls) -> None:
        """Creates the model's indexes, compound ones included."""
        super().setup()
        collection = cls._collection()
        for keys in cls.compound:
            # "simple" hands the key list to create_index as it is
            collection.ensure_index(list(keys), direction="simple")

    @classmethod
    def reserve_ids(cls, count: int) -> range:
        """Reserves `count` consecutive integer ids with one counter update."""
        counters = cls._collection(name="counters")
        name = cls._name() + ":id"
        value = counters.find_and_modify(
            {"_id": name}, {"$inc": {"seq": count}}, new=True, upsert=True
        )
        value = value or counters.find_one({"_id": name})
        last = value["seq"]
        return range(last - count + 1, last + 1)
