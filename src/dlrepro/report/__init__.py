"""The curriculum report: what the text printed, beside what its code and the framework give.

`load` reads the stages' outputs back, `tables` turns them into the report's cells, `markdown` and
`html` render them, and `write` writes reports/curriculum.md and reports/index.html.
"""
