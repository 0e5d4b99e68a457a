"""MLflow for every stage: where runs go (`store`), the run and tags a stage records (`runs`), the
cache splits it reads as dataset inputs (`datasets`), Lightning's logger made safe to interrupt
(`logger`), and a server's faults told apart, with bounded waits (`faults`). Plumbing only:
nothing here changes what a stage writes.

mlflow is imported inside the functions: it imports slowly, and a config error must fail first.
"""
