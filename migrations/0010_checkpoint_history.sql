-- 0010: a run's checkpoint history. A run keeps checkpoints at chosen epochs for good (log-spaced by
-- default: 1, 2, 4, 8, … and the last), each with what it learned when it was saved, so reviewers can
-- audit and release the one worth most within the memorization budget. The other checkpoints are for
-- resuming after a crash and are pruned as newer ones land.
--
-- `kept` is a flag (0/1). `info` is JSON: `epochs` done at the checkpoint and `utility` (held-out bits per
-- byte, continuation choice; see src/eval). JSON rather than float columns: the figures are read whole,
-- never filtered on in SQL. Checkpoints recorded before this migration are not kept (0) and have no info.
ALTER TABLE checkpoints ADD COLUMN kept BIGINT NOT NULL DEFAULT 0;
ALTER TABLE checkpoints ADD COLUMN info TEXT;
