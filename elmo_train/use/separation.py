"""How well a layer's vectors separate labelled groups, and 2-D projections to draw them.

Pure functions of the vectors, on cosine geometry (what `elmo similar` and the probes use): the
mean silhouette (Rousseeuw 1987) with cosine distance, leave-one-out 1-nearest-neighbour label
accuracy (ties for the nearest neighbour split evenly, so identical vectors score exactly the
chance accuracy), k-means with k-means++ starts, PCA, and UMAP when `umap-learn` is installed.
"""

from collections.abc import Sequence

import torch

from elmo_train.errors import UserError
from elmo_train.use.probes import TIE_TOLERANCE
from elmo_train.use.similarity import cosine_similarities

METHODS = ("pca", "umap")
KMEANS_RESTARTS = 10  # k-means++ starts; the lowest inertia wins
KMEANS_ITERATIONS = 100


def cosine_distances(vectors: torch.Tensor) -> torch.Tensor:
    """`(N, D)` -> `(N, N)` cosine distances `1 - cos` in float64; below `TIE_TOLERANCE` is 0.

    The snap makes vectors that differ only by batch-shape rounding (the token layer) coincide.
    """
    distances = (1.0 - cosine_similarities(vectors)).clamp(min=0.0)
    return torch.where(distances < TIE_TOLERANCE, torch.zeros_like(distances), distances)


def silhouette(distances: torch.Tensor, labels: Sequence[str]) -> float:
    """Mean silhouette of `(N, N)` distances under `labels` (Rousseeuw 1987).

    Per item, `a` is its mean distance to the other members of its label, `b` the smallest mean
    distance to the members of another label, `s = (b - a) / max(a, b)`; an item alone in its
    label, or with `a = b = 0`, scores 0. Needs at least two distinct labels.
    """
    names = sorted(set(labels))
    assert len(names) >= 2, "a silhouette needs at least two labels"
    index = torch.tensor([names.index(label) for label in labels])
    members = torch.nn.functional.one_hot(index, len(names)).double()  # (N, K)
    sizes = members.sum(dim=0)  # (K,)
    totals = distances.double() @ members  # (N, K): summed distance to each label's members
    own = sizes[index]
    a = totals[torch.arange(len(labels)), index] / (own - 1).clamp(min=1)
    means = totals / sizes
    means[torch.arange(len(labels)), index] = float("inf")
    b = means.min(dim=1).values
    denominator = torch.maximum(a, b)
    scores = torch.where(
        (own > 1) & (denominator > 0), (b - a) / denominator.clamp(min=1e-300), 0.0
    )
    return float(scores.mean())


def nearest_neighbour_accuracy(similarities: torch.Tensor, labels: Sequence[str]) -> float:
    """Leave-one-out 1-nearest-neighbour label accuracy from `(N, N)` similarities.

    Every other item within `TIE_TOLERANCE` of the best similarity is a nearest neighbour; an
    item scores the fraction of them that share its label (ties broken at random, in
    expectation). With all similarities equal this is the chance accuracy.
    """
    others = similarities.double().clone()
    others.fill_diagonal_(float("-inf"))
    tied = others >= others.max(dim=1, keepdim=True).values - TIE_TOLERANCE  # (N, N)
    names = sorted(set(labels))
    index = torch.tensor([names.index(label) for label in labels])
    same = index.unsqueeze(0) == index.unsqueeze(1)  # (N, N)
    return float(((tied & same).sum(dim=1).double() / tied.sum(dim=1)).mean())


def chance_accuracy(labels: Sequence[str]) -> float:
    """The 1-NN accuracy if every other item were equally near."""
    return nearest_neighbour_accuracy(torch.zeros(len(labels), len(labels)), labels)


def kmeans(points: torch.Tensor, k: int, seed: int = 0) -> tuple[list[int], float]:
    """Lloyd's k-means of `(N, D)` points from `KMEANS_RESTARTS` k-means++ starts (seeded).

    Returns the cluster of each point, numbered by first appearance (the first point is in
    cluster 0), and the inertia (summed squared distance to the assigned centroid).
    """
    points = points.double()
    n = len(points)
    assert 1 <= k <= n, f"k-means with {k} clusters of {n} points"
    generator = torch.Generator().manual_seed(seed)
    best_assignment, best_inertia = None, 0.0
    for _ in range(KMEANS_RESTARTS):
        centroids = _kmeans_plus_plus(points, k, generator)
        assignment = None
        for _ in range(KMEANS_ITERATIONS):
            new = torch.cdist(points, centroids).argmin(dim=1)
            if assignment is not None and torch.equal(new, assignment):
                break
            assignment = new
            for cluster in range(k):
                members = points[assignment == cluster]
                if len(members):  # an emptied cluster keeps its centroid
                    centroids[cluster] = members.mean(dim=0)
        inertia = float(((points - centroids[assignment]) ** 2).sum())
        if best_assignment is None or inertia < best_inertia * (1 - 1e-12):
            best_assignment, best_inertia = assignment, inertia
    order = list(dict.fromkeys(best_assignment.tolist()))
    return [order.index(c) for c in best_assignment.tolist()], best_inertia


def _kmeans_plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each next centre is drawn with
    probability proportional to the squared distance to the nearest centre chosen so far."""
    first = int(torch.randint(len(points), (1,), generator=generator))
    centroids = [points[first]]
    nearest = ((points - points[first]) ** 2).sum(dim=1)
    for _ in range(1, k):
        if float(nearest.sum()) == 0.0:  # fewer distinct points than clusters
            choice = int(torch.randint(len(points), (1,), generator=generator))
        else:
            choice = int(torch.multinomial(nearest, 1, generator=generator))
        centroids.append(points[choice])
        nearest = torch.minimum(nearest, ((points - points[choice]) ** 2).sum(dim=1))
    return torch.stack(centroids).clone()


def pca_2d(vectors: torch.Tensor) -> torch.Tensor:
    """`(N, D)` -> `(N, 2)` coordinates on the first two principal components (float64).

    Each component's sign is fixed so that its largest-magnitude loading is positive, so the
    picture does not flip between runs. Fewer than two varying directions give zero columns.
    """
    centred = vectors.double() - vectors.double().mean(dim=0)
    _, singular, basis = torch.linalg.svd(centred, full_matrices=False)  # basis: (r, D)
    basis = basis[:2]
    signs = torch.sign(basis.gather(1, basis.abs().argmax(dim=1, keepdim=True)))
    coordinates = centred @ (basis * signs).T  # (N, <=2)
    # Directions with no spread (numerically) carry only rounding noise.
    coordinates[:, singular[:2] <= 1e-12 * max(float(singular[0]), 1e-300)] = 0.0
    return torch.nn.functional.pad(coordinates, (0, 2 - coordinates.shape[1]))


def require_umap():
    """The `umap` module of the optional `umap-learn` package, or one line on how to get it."""
    try:
        import umap
    except ImportError:
        raise UserError(
            "--method umap needs the umap-learn package: pip install 'elmo-train[umap]' "
            "(or use --method pca)"
        ) from None
    return umap


def umap_2d(vectors: torch.Tensor, seed: int) -> torch.Tensor:
    """`(N, D)` -> `(N, 2)` by UMAP with cosine distance (needs the optional `umap-learn`)."""
    reducer = require_umap().UMAP(
        n_components=2,
        n_neighbors=max(2, min(15, len(vectors) - 1)),
        metric="cosine",
        random_state=seed,
    )
    return torch.from_numpy(reducer.fit_transform(vectors.double().numpy())).double()
