"""tfmot's internal module paths that its official guides import.

Two guides reach below the public API: the PCQAT and sparsity-preserving
clustering examples import
`tensorflow_model_optimization.python.core.clustering.keras.experimental.cluster`,
and the pruning, clustering and QAT examples import `keras` from
`tensorflow_model_optimization.python.core.keras.compat`. Replacing the
package name must keep those imports working, so these thin modules
re-export tfmot_lite's public names under the same paths; nothing else of
tfmot's internals is mirrored.
"""
