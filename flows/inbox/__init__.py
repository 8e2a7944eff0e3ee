"""The inbox flows (:mod:`~flows.inbox.flow`): a folder watched on a schedule, its new files
claimed in batches and transcribed on the pool; which files are new and the ledger of those done
(:mod:`~flows.inbox.files`); and the quarantine for files that cannot be transcribed
(:mod:`~flows.inbox.quarantine`)."""
