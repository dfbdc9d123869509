"""Mean, median and a one-line summary, without the standard statistics module."""


def mean(values):
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / len(values)


def median(values):
    if not values:
        raise ValueError("median of an empty list")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2 == 1:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def summarize(values):
    return (
        f"count={len(values)} min={min(values)} max={max(values)} "
        f"mean={mean(values):.2f} median={median(values)}"
    )
