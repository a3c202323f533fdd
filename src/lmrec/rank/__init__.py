"""Second-stage ranking: candidate sources, features, rankers, item attributes, profiles."""

# The rank modules import `lmrec.models.base`, and `lmrec.models` imports the fusion model,
# which imports them: loading the models package first keeps either import order working.
import lmrec.models  # noqa: F401
