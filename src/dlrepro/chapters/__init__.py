"""The curriculum, one package per chapter of the text: `text_code` (the text's numpy code as
written, no torch), `twin` (its torch/Lightning version, where the text has one) and `run` (runs
both, compares them with what the text prints, and returns a `ChapterResult` that the stage
`curriculum-<name>` writes and logs). `_common` holds what every chapter shares; the report
lists the chapters in order (`dlrepro.report.CHAPTERS`)."""
