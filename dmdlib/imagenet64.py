"""Notebook 07's ImageNet-64 section: the pairing of a supplied conditional ADM teacher and one-step student.

The weights of EDM's class-conditional ImageNet-64 teacher and of DMD2's
student are not available offline; with none supplied the section says what
to supply and how to convert it (``IMAGENET64_HELP``).
"""
from __future__ import annotations

from pathlib import Path

from . import evaluation
from .evaluation import reference_levels
from .metrics import delta_e_sets
from .pairing import eval_seed_sets, generate, stream_labels
from .runs import resolve_device
from .sampler import phi_k


IMAGENET64_HELP = """No ImageNet-64 weights were supplied, so this section shows nothing. To evaluate them, run this
notebook with the parameter `imagenet_teacher` set to the path of a converted state dict of EDM's class-conditional
ImageNet-64 ADM teacher (`edm-imagenet-64x64-cond-adm.pkl`: 192 base channels, 1000 classes, 295,899,267
parameters), and optionally `imagenet_student` to a converted DMD2 ImageNet-64 one-step generator of the same
architecture, e.g.

    papermill notebooks/07_conditioning.ipynb out.ipynb -p preset paper -p imagenet_teacher edm64.safetensors \\
        -p imagenet_student dmd2_64.safetensors

Both must be plain state dicts (parameter name -> tensor, EDM's names, with or without the `model.` prefix) saved
with safetensors or `torch.save`; dmdlib never unpickles a file. How to convert EDM's or DMD2's pickles once, in a
checkout of the code that wrote them: see `dmdlib.nets.adm.load_imagenet64`. The teacher is then evaluated
($\\Phi_1$ and $\\Phi_8$ on R sets of N seeds with uniform random classes); with a student, its $\\Delta_E$
with the interval and the start and random-pairing levels (a GPU is needed: 15 network calls of a 296M-parameter
network per seed)."""


def imagenet64_section(teacher_path="", student_path="", n_eval: int = 1000, n_sets: int = 10, k: int = 8,
                       n_show: int = 8, seed: int = 0, device="auto", batch: int = 50, config=None) -> dict:
    """Notebook 07's ImageNet-64 section: the pairing of a supplied conditional teacher (and one-step student).

    With no ``teacher_path``: ``{"status": "not supplied", "instructions": ...}`` (what to supply and how).
    Otherwise both networks are loaded strictly (:func:`dmdlib.nets.adm.load_imagenet64`; ``config`` replaces
    ``dmdlib.configs.IMAGENET64_UNET``, for tests), the evaluation seeds are R sets of N with uniform one-hot
    classes, and the result holds the start level Delta_E(Phi_K, Phi_1) and, with a student (used as
    G(z, c) = D(sigma_max z, sigma_max, c), DMD2's generator), its Delta_E interval with the start and
    random-pairing references; ``samples`` holds the first ``n_show`` images of each map. A supplied student
    has no convergence verdict (its training is not ours to check).
    """
    from .dmd import OneStepGenerator
    from .nets.adm import load_imagenet64

    if not teacher_path:
        if student_path:
            raise ValueError("imagenet_student was given without imagenet_teacher; Delta_E needs the teacher's Phi_K")
        return {"status": "not supplied", "instructions": IMAGENET64_HELP}
    for name, path in (("imagenet_teacher", teacher_path), ("imagenet_student", student_path)):
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{name}: no file at {str(path)!r}")
    dev = resolve_device(device) if isinstance(device, str) else device
    teacher = load_imagenet64(teacher_path, dev, config=config)
    net = teacher.model
    shape, label_dim = (net.in_channels, net.img_resolution, net.img_resolution), int(net.label_dim)
    z = eval_seed_sets(n_sets, n_eval, shape, seed)
    labels = stream_labels(z.shape[0], label_dim, seed, "eval-labels")

    phi_1, phi_8 = (phi_k(teacher, z.to(dev), kk, labels=labels.to(dev), batch_size=batch).cpu() for kk in (1, k))
    out = {"status": "teacher", "teacher": str(teacher_path), "n_params": sum(p.numel() for p in teacher.parameters()),
           "n_eval": n_eval, "n_sets": n_sets, "k": k,
           "start": evaluation.student_record(delta_e_sets(phi_8, phi_1, n_sets)),
           "samples": {r"$\Phi_1$": phi_1[:n_show], rf"$\Phi_{{{k}}}$": phi_8[:n_show]}}
    if student_path:
        gen = OneStepGenerator(load_imagenet64(student_path, dev, config=config)).eval()
        g = generate(gen, z, labels, batch, dev)
        rec = evaluation.student_record(delta_e_sets(phi_8, g, n_sets))
        out.update(status="teacher and student", student=str(student_path), delta_e=rec,
                   references=reference_levels(phi_8, phi_1, g, n_sets, seed=seed),
                   converged="not assessed (supplied weights)")
        out["samples"]["$G$"] = g[:n_show]
    return out
