"""Training algorithms: one file per algorithm (STYLE.md rule 2); the runner contract is `base.Algo`."""
