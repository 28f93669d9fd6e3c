"""Numbers *reported in the paper* (not produced by this code), quoted next to ours in the book.

Each entry names where the paper states it. Our own results are never
written here; they come from running the notebooks.
"""

PAPER = {
    "chessboard": {"delta_e": 8.55, "where": "Fig. 2 and 3 (2-D chessboard in R^4)"},
    "moons": {"delta_e": None, "where": "Fig. 5 top (no Delta_E reported)"},
    "gaussian_mixture": {"delta_e": None, "where": "Fig. 5 bottom (no Delta_E reported)"},
    "mnist_uncond": {"delta_e": 0.0367, "where": "Fig. 1 and 3 (teacher 8192 kimg)"},
    # logged by the authors' public code for the 8192-kimg teacher/student pair (N = 1000, L2 over pixels in [-1, 1]);
    # not printed in the paper itself
    "mnist_uncond_logged": {"mean_dist_g_phi8": 10.05, "mean_dist_phi1_phi8": 14.64,
                            "mean_nn_dist_phi8": 10.87, "mean_avg_dist_phi8": 21.85,
                            "where": "authors' code logs (8192-kimg teacher)"},
    "mnist_uncond_by_teacher": {"1024": 1.05, "2048": 0.389, "4096": 0.237, "8192": 0.0367,
                                "where": "Fig. 9 bottom and 10 (teacher snapshots, kimg)"},
}
