"""Domains as k-means clusters of chunk embeddings (faiss), flat or two-level.

Flat: k-means with k = `num_domains`. Two-level (the fine-grained scenario, as in DGA): k-means
with `coarse_domains` clusters, then k-means inside each coarse cluster, either the same number
of fine clusters in each (`equal`: num_domains / coarse_domains) or a number proportional to the
coarse cluster's size (`proportional`, `num_domains` in total). Embeddings are unit vectors, so
"nearest" means the largest inner product (spherical k-means).

A cluster with fewer than `min_size` chunks is merged into the cluster most of its chunks would
join otherwise (within the same coarse cluster), and every merge is recorded in
`Clustering.merges` (`into`: the surviving cluster's final number; None: the cluster was alone
in its group, so it is kept although small). Merging never moves
a centroid: several centroids simply map to one domain. So `Clustering.assign` on the clustered
embeddings reproduces their domains exactly, and new text (the specialist set) is assigned by the
very rule that built the domains. Everything is seeded: one seed, one clustering. Each k-means keeps the best of a few random
initialisations (`restarts`): a single one often merges two clear groups and splits another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from domains.seeds import COARSE_KMEANS_STREAM, FINE_KMEANS_STREAM, derive_seed

FINE_ALLOCATIONS = ("equal", "proportional")


@dataclass
class Clustering:
    """Nearest-centroid assignment: nearest coarse centroid -> its coarse cluster
    (`coarse_group`), then nearest fine centroid of that coarse cluster -> its domain
    (`fine_domain`). Flat clusterings have no coarse level (one coarse cluster, 0)."""

    fine_centroids: np.ndarray  # (F, d)
    fine_group: np.ndarray  # (F,) coarse cluster of each fine centroid
    fine_domain: np.ndarray  # (F,) domain of each fine centroid
    coarse_centroids: np.ndarray | None = None  # (C, d)
    coarse_group: np.ndarray | None = None  # (C,) coarse cluster of each coarse centroid
    merges: list[dict] = field(default_factory=list)

    @property
    def num_domains(self) -> int:
        return int(self.fine_domain.max()) + 1

    def coarse_of(self) -> np.ndarray | None:
        """The coarse cluster of every domain (None when flat)."""
        if self.coarse_centroids is None:
            return None
        coarse = np.empty(self.num_domains, dtype=np.int64)
        coarse[self.fine_domain] = self.fine_group
        return coarse

    def groups(self, x: np.ndarray) -> np.ndarray:
        """The coarse cluster of every row of ``x``."""
        if self.coarse_centroids is None:
            return np.zeros(len(x), dtype=np.int64)
        return self.coarse_group[_nearest(x, self.coarse_centroids)]

    def assign(self, x: np.ndarray) -> np.ndarray:
        """The domain of every row of ``x`` (unit-norm embeddings)."""
        return self.fine_domain[
            _nearest_in_group(x, self.groups(x), self.fine_centroids, self.fine_group)
        ]

    def save(self, path: Path) -> None:
        arrays = {
            "fine_centroids": self.fine_centroids,
            "fine_group": self.fine_group,
            "fine_domain": self.fine_domain,
        }
        if self.coarse_centroids is not None:
            arrays |= {"coarse_centroids": self.coarse_centroids, "coarse_group": self.coarse_group}
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> Clustering:
        with np.load(path) as arrays:
            return cls(**{name: arrays[name] for name in arrays.files})


def fit_clustering(
    x: np.ndarray,
    num_domains: int,
    *,
    coarse_domains: int = 0,
    fine_allocation: str = "equal",
    min_size: int = 1,
    seed: int = 0,
    niter: int = 20,
    restarts: int = 3,
) -> Clustering:
    """Cluster the unit-norm rows of ``x`` into (at most) ``num_domains`` domains."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    check_clustering(n, num_domains, coarse_domains, fine_allocation, min_size)
    merges: list[dict] = []
    coarse_centroids = coarse_group = None
    groups = np.zeros(n, dtype=np.int64)
    if coarse_domains:
        coarse_seed = derive_seed(seed, COARSE_KMEANS_STREAM, bits=31)  # faiss takes a C int
        coarse_centroids = _kmeans(x, coarse_domains, coarse_seed, niter, restarts)
        coarse_group = _merge_small(
            x,
            coarse_centroids,
            np.zeros(coarse_domains, np.int64),
            groups,
            min_size,
            "coarse",
            merges,
        )
        groups = coarse_group[_nearest(x, coarse_centroids)]

    sizes = np.bincount(groups)
    centroids, fine_group = [], []
    for group, k in enumerate(_allocate(num_domains, coarse_domains, sizes, fine_allocation)):
        members = x[groups == group]
        fine_seed = derive_seed(seed, FINE_KMEANS_STREAM, group, bits=31)
        centroids.append(_kmeans(members, min(k, len(members)), fine_seed, niter, restarts))
        fine_group.append(np.full(len(centroids[-1]), group, dtype=np.int64))
    fine_centroids, fine_group = np.concatenate(centroids), np.concatenate(fine_group)
    fine_domain = _merge_small(x, fine_centroids, fine_group, groups, min_size, "fine", merges)
    return Clustering(
        fine_centroids, fine_group, fine_domain, coarse_centroids, coarse_group, merges
    )


def check_clustering(n: int, num_domains: int, coarse: int, allocation: str, min_size: int) -> None:
    """Raises a ValueError naming the problem when these settings cannot cluster n chunks."""
    if num_domains < 1:
        raise ValueError(f"num_domains must be at least 1, got {num_domains}")
    if num_domains > n:
        raise ValueError(f"num_domains={num_domains} is larger than the number of chunks ({n})")
    if min_size < 1:
        raise ValueError(f"the minimum domain size must be at least 1 chunk, got {min_size}")
    if coarse < 0 or coarse > num_domains:
        raise ValueError(f"coarse_domains={coarse} must be in [0, num_domains={num_domains}]")
    if allocation not in FINE_ALLOCATIONS:
        raise ValueError(f"fine_allocation must be one of {FINE_ALLOCATIONS}, got {allocation!r}")
    if coarse and allocation == "equal" and num_domains % coarse:
        raise ValueError(
            f"fine_allocation=equal needs num_domains ({num_domains}) to be a multiple of "
            f"coarse_domains ({coarse}); or use fine_allocation=proportional"
        )


def _allocate(num_domains: int, coarse: int, sizes: np.ndarray, allocation: str) -> list[int]:
    """Fine clusters per coarse cluster: equal shares, or proportional to size (largest
    remainder, at least one each)."""
    if not coarse:
        return [num_domains]
    if allocation == "equal":
        return [num_domains // coarse] * len(sizes)
    share = num_domains * sizes / sizes.sum()
    counts = np.maximum(1, np.floor(share).astype(np.int64))
    for group in np.argsort(-(share - np.floor(share)), kind="stable"):
        if counts.sum() >= num_domains:
            break
        counts[group] += 1
    return counts.tolist()


def _kmeans(x: np.ndarray, k: int, seed: int, niter: int, restarts: int) -> np.ndarray:
    """Spherical k-means, best of `restarts` random initialisations (faiss's nredo)."""
    kmeans = faiss.Kmeans(
        x.shape[1],
        k,
        niter=niter,
        nredo=restarts,
        seed=seed,
        spherical=True,
        min_points_per_centroid=1,
    )
    kmeans.train(x)
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, nearest = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return nearest[:, 0].astype(np.int64)


def _nearest_in_group(
    x: np.ndarray, groups: np.ndarray, centroids: np.ndarray, centroid_group: np.ndarray
) -> np.ndarray:
    """For every row, the nearest of the centroids in the row's group."""
    nearest = np.empty(len(x), dtype=np.int64)
    for group in np.unique(groups):
        rows = groups == group
        candidates = np.flatnonzero(centroid_group == group)
        nearest[rows] = candidates[_nearest(x[rows], centroids[candidates])]
    return nearest


def _merge_small(
    x: np.ndarray,
    centroids: np.ndarray,
    centroid_group: np.ndarray,
    groups: np.ndarray,
    min_size: int,
    level: str,
    merges: list[dict],
) -> np.ndarray:
    """The cluster (0..m'-1) of every centroid after merging clusters smaller than
    ``min_size`` into a cluster of the same group; merges are appended to ``merges``."""
    owner = np.arange(len(centroids))  # each centroid's cluster, named by one of its centroids
    nearest = _nearest_in_group(x, groups, centroids, centroid_group)
    unmergeable: set[int] = set()
    while True:
        sizes = np.bincount(owner[nearest], minlength=len(centroids))
        small = [c for c in np.unique(owner) if sizes[c] < min_size and c not in unmergeable]
        if not small:
            break
        cluster = min(small, key=lambda c: (sizes[c], c))
        others = (centroid_group == centroid_group[cluster]) & (owner != cluster)
        if not others.any():
            unmergeable.add(cluster)
            continue
        members = np.flatnonzero(owner[nearest] == cluster)
        probe = x[members] if len(members) else centroids[[cluster]]
        candidates = np.flatnonzero(others)
        votes = owner[candidates[_nearest(probe, centroids[candidates])]]
        target = int(np.bincount(votes).argmax())
        owner[owner == cluster] = target
        merges.append(
            {
                "level": level,
                "kmeans_cluster": int(cluster),
                "chunks": int(sizes[cluster]),
                "into": target,
            }
        )
    clusters, compact = np.unique(owner, return_inverse=True)
    for merge in merges:
        if merge["level"] == level:  # name the surviving cluster by its final number
            merge["into"] = int(np.searchsorted(clusters, owner[merge["into"]]))
    for cluster in sorted(unmergeable):  # alone in its group: kept, and reported
        merges.append(
            {
                "level": level,
                "kmeans_cluster": int(cluster),
                "chunks": int(sizes[cluster]),
                "into": None,
            }
        )
    return compact.astype(np.int64)


def merge_small_domains(
    clustering: Clustering,
    chunks: np.ndarray,
    train_tokens: np.ndarray,
    min_chunks: int,
    seq_len: int,
) -> tuple[Clustering, np.ndarray, list[dict]]:
    """Merges every domain with fewer than `min_chunks` chunks or without one training sequence
    (more than `seq_len` tokens) into the domain of its coarse cluster whose centroid is nearest,
    smallest first. For a streaming preparation, which fits k-means on a sample and learns the
    domains' sizes over the whole corpus only after assigning every chunk. Returns the clustering
    with domains renumbered 0..k'-1, each old domain's new number, and the merges."""
    k = clustering.num_domains
    coarse = clustering.coarse_of()
    coarse = np.zeros(k, dtype=np.int64) if coarse is None else coarse
    owner = np.arange(k)  # each domain's surviving domain (by its old number)
    chunks, train_tokens = chunks.astype(np.int64).copy(), train_tokens.astype(np.int64).copy()
    centroids = np.stack(
        [clustering.fine_centroids[clustering.fine_domain == d].mean(axis=0) for d in range(k)]
    )
    merges: list[dict] = []
    while True:
        alive = np.flatnonzero(owner == np.arange(k))
        small = alive[(chunks[alive] < min_chunks) | (train_tokens[alive] <= seq_len)]
        small = [d for d in small if ((coarse[alive] == coarse[d]) & (alive != d)).any()]
        if not small:
            break
        d = min(small, key=lambda d: (chunks[d], d))
        others = alive[(coarse[alive] == coarse[d]) & (alive != d)]
        target = int(others[np.argmax(centroids[others] @ centroids[d])])
        merges.append({"level": "fine, full corpus", "domain": int(d), "chunks": int(chunks[d])})
        owner[owner == d] = target
        chunks[target] += chunks[d]
        train_tokens[target] += train_tokens[d]
    survivors, remap = np.unique(owner, return_inverse=True)
    for merge in merges:
        merge["into"] = int(np.searchsorted(survivors, owner[merge["domain"]]))
    merged = Clustering(
        clustering.fine_centroids,
        clustering.fine_group,
        remap[clustering.fine_domain],
        clustering.coarse_centroids,
        clustering.coarse_group,
        [*clustering.merges, *merges],
    )
    return merged, remap.astype(np.int64), merges
