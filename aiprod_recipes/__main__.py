from aiprod_recipes.cli import entry

entry()
