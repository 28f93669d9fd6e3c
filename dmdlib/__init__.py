"""dmdlib: an executable reproduction of "Why Are DMD Students Lazy?" (Li et al., 2026).

The ground layer (schedule, sampler, preconditioning, networks, data), the
training layer (EDM teacher, DMD) and the analysis layer (Delta_E, plots).
Names follow the paper: ``phi_k``, ``pairing_inefficiency`` (Delta_E),
``sigma_max``.
"""
from . import calibration, explorer, plots
from .analytic import GaussianDenoiser, gaussian_flow_map
from .constructions import deformed_circle_teacher, rotation_student
from .data import TOY_DATASETS, GaussianMixture, sample_toy
from .dmd import DMDResult, OneStepGenerator, distill, dm_gradient, dm_loss, fake_score_loss
from .metrics import (delta_e, delta_e_interval, delta_e_record, delta_e_sets, delta_e_vs_n, random_pairing, optimal_assignment, pair_distances, pairing_inefficiency,
                      pca_projection, squared_distances, transport_energies)
from .metrics import (chance_agreement, chance_agreement_sets, mode_agreement, mode_agreement_sets, pairing_measures,
                      relative_pairing_error, relative_pairing_error_sets, t_interval, teacher_spread)
from .nets import ADMUNet, MLPNet, load_edm_state_dict
from .precond import EDMPrecond, edm_coefficients, edm_loss
from .presets import PRESET_NAMES, DMDConfig, TeacherConfig, ToyPreset, get_preset
from .runs import (ConfigMismatchError, CorruptCheckpointError, NonFiniteLossError, Stopwatch, hardware_info,
                   load_checkpoint, resolve_device, write_json)
from .sampler import heun_sample, phi_k
from .schedule import SIGMA_DATA, SIGMA_MAX, SIGMA_MIN, band_indices, karras_sigmas, karras_table
from .teacher import TeacherResult, load_snapshot, train_teacher

__version__ = "0.2.0"
"""The version of the training code. Every run folder records it (``code_version`` in
``config.json``) and refuses to resume or reload a run made with another one, so bump it
whenever training behaviour changes (what a teacher or DMD run computes from the same
configuration, data and seed); leave it alone for changes that do not affect training."""
