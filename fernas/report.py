"""Plots of a run: learning curves, the normalised confusion matrix and saliency maps.

Saliency follows seed 002 (Khaireddin & Chen, section "Saliency map", after Simonyan et al.
2014): the loss of one test image is propagated back to its pixels and the absolute
gradient shows which pixels move the decision most.  The gradient is taken through the
same ten-crop averaging the test uses, so it covers the whole 48x48 face.  One image per
class (the test image of that class the model classifies most confidently and correctly,
else its most probable one), shown as original, saliency map and overlay.

All figures use matplotlib's Agg backend (no display needed) and are written atomically;
`new_figure` and `save_figure` serve every plot of the package (the search's included).
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fernas.io import atomic_write_bytes  # noqa: E402


def new_figure(figsize=(6.4, 4.2), dpi=110):
    """One Agg figure with one axes and a light grid: `(fig, ax)`, for `save_figure`."""
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    ax.grid(alpha=0.3)
    return fig, ax


def figure_png(fig) -> bytes:
    """`fig` as PNG bytes (110 dpi, cropped to its content); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def save_figure(fig, path) -> None:
    """Write `fig` as a PNG atomically, then close it."""
    atomic_write_bytes(path, figure_png(fig))


def curves_png(history: list[dict], title: str = "") -> bytes:
    """PNG of the loss, accuracy and learning rate per epoch; phases (train, finetune) follow each other."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = list(range(1, len(history) + 1))
    series = {k: [h.get(k, math.nan) for h in history]
              for k in ("train_loss", "val_loss", "train_acc", "val_acc", "lr")}
    axes[0].plot(x, series["train_loss"], label="train")
    axes[0].plot(x, series["val_loss"], label="validation")
    axes[0].set_title("cross-entropy loss")
    axes[1].plot(x, series["train_acc"], label="train")
    axes[1].plot(x, series["val_acc"], label="validation")
    axes[1].set_title("accuracy")
    axes[2].plot(x, series["lr"], color="tab:green")
    axes[2].set_title("learning rate")
    if any(v > 0 for v in series["lr"]):
        axes[2].set_yscale("log")
    # A dashed line where a new phase (fine-tuning) starts.
    for i in range(1, len(history)):
        if history[i].get("phase") != history[i - 1].get("phase"):
            for ax in axes:
                ax.axvline(i + 0.5, color="grey", ls="--", lw=1)
            axes[1].text(i + 0.5, axes[1].get_ylim()[0], f" {history[i].get('phase')}", color="grey",
                         va="bottom")
    from matplotlib.ticker import MaxNLocator

    phases = " then ".join(dict.fromkeys(h.get("phase", "train") for h in history))
    for ax in axes:
        ax.set_xlabel(f"epoch ({phases})" if " " in phases else "epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    if title:
        fig.suptitle(title)
    return figure_png(fig)


def plot_confusion(confusion: list[list[int]], classes: list[str], path, title: str = "") -> None:
    """Row-normalised confusion matrix (each true class sums to 1), counts in brackets."""
    cm = torch.tensor(confusion, dtype=torch.float64)
    norm = cm / cm.sum(1, keepdim=True).clamp(min=1)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.1 * k + 2, 1.0 * k + 1.5))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            v = float(norm[i, j])
            ax.text(j, i, f"{v:.2f}\n({int(cm[i, j])})", ha="center", va="center", fontsize=7,
                    color="white" if v > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title or "confusion matrix (rows normalised)")
    save_figure(fig, path)


def saliency_maps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|d loss / d pixel| of uint8 images x (n, 48, 48) with labels y: (n, 48, 48) in [0, 1].

    The gradient flows through the ten-crop average, the test-time prediction.
    """
    from fernas.augment import ten_crop

    dev = next(model.parameters()).device
    model.eval()
    xf = (x.to(dev).float() / 255.0).unsqueeze(1).requires_grad_(True)  # (n, 1, 48, 48)
    n = xf.shape[0]
    crops = ten_crop(xf)  # (n, 10, 1, 40, 40), differentiable gather
    with torch.enable_grad():
        logits = model(crops.reshape(n * 10, 1, *crops.shape[-2:])).float().view(n, 10, -1).mean(1)
        loss = F.cross_entropy(logits, y.to(dev), reduction="sum")
        (grad,) = torch.autograd.grad(loss, xf)
    sal = grad.abs()[:, 0]  # (n, 48, 48)
    peak = sal.flatten(1).amax(1).clamp(min=1e-12)[:, None, None]
    return (sal / peak).detach().cpu()


def pick_examples(probs: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[int | None]:
    """For each class, the index of its test image with the highest probability of the true
    class (correct ones first by construction), or None when the class has no test image."""
    picks: list[int | None] = []
    p_true = probs[torch.arange(len(y)), y]
    for c in range(num_classes):
        idx = torch.nonzero(y == c).flatten()
        picks.append(None if idx.numel() == 0 else int(idx[p_true[idx].argmax()]))
    return picks


def plot_saliency(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, probs: torch.Tensor,
                  classes: list[str], path) -> None:
    """Original, saliency and overlay of one test image per class (seed 002's Figure 5)."""
    picks = pick_examples(probs, y.cpu(), len(classes))
    cols = [(c, i) for c, i in enumerate(picks) if i is not None]
    if not cols:
        return
    idx = torch.tensor([i for _, i in cols])
    sal = saliency_maps(model, x[idx], y[idx])
    fig, axes = plt.subplots(3, len(cols), figsize=(1.9 * len(cols), 6.2), squeeze=False)
    pred = probs[idx].argmax(1)
    for j, (c, i) in enumerate(cols):
        img = (x[i].cpu().float() / 255.0).numpy()
        axes[0, j].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"{classes[c]}\npred {classes[int(pred[j])]} {float(probs[i, pred[j]]):.2f}",
                             fontsize=8)
        axes[1, j].imshow(sal[j].numpy(), cmap="hot", vmin=0, vmax=1)
        axes[2, j].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[2, j].imshow(sal[j].numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        for r in range(3):
            axes[r, j].axis("off")
    axes[0, 0].text(-6, 24, "image", rotation=90, va="center", ha="right", fontsize=9)
    axes[1, 0].text(-6, 24, "saliency", rotation=90, va="center", ha="right", fontsize=9)
    axes[2, 0].text(-6, 24, "overlay", rotation=90, va="center", ha="right", fontsize=9)
    fig.suptitle("gradient saliency (|d loss / d pixel|, through ten-crop averaging)", fontsize=10)
    save_figure(fig, path)


def write_plots(run_dir, history: list[dict], metrics: dict, model, test_split, probs, classes,
                title: str = "", split: str = "test") -> list[str]:
    """curves.png, confusion.png and saliency.png in run_dir; returns the names written. `split`
    names the evaluated split (its accuracy is metrics[f"{split}_accuracy_tencrop"])."""
    from pathlib import Path

    run_dir = Path(run_dir)
    names = []
    if history:
        atomic_write_bytes(run_dir / "curves.png", curves_png(history, title))
        names.append("curves.png")
    plot_confusion(metrics["confusion"], classes, run_dir / "confusion.png",
                   f"{title} ten-crop {split} accuracy {metrics[f'{split}_accuracy_tencrop']:.4f}".strip())
    names.append("confusion.png")
    if len(test_split):
        plot_saliency(model, test_split.x, test_split.y, probs, classes, run_dir / "saliency.png")
        names.append("saliency.png")
    return names
