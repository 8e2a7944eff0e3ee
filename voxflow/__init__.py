"""voxflow: media to transcripts and subtitles with open speech models, on Prefect 3.

This package holds what every layer shares: the error hierarchy and the settings parser.
The pipeline itself lives in the top-level packages `flows`, `tasks`, `blocks` and `profiles`.
"""

__version__ = "0.1.0"
