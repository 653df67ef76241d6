"""Packaging for Pushi, the self-hosted real-time event server."""

import os

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))

with open(os.path.join(HERE, "README.md"), encoding="utf-8") as readme:
    LONG_DESCRIPTION = readme.read()

setuptools.setup(
    name="pushi",
    version="0.7.0",
    description="Self-hosted real-time events over WebSocket, Pusher compatible",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "src"},
    packages=setuptools.find_packages("src"),
    include_package_data=True,
    package_data={"pushi": ["app/static/**/*"]},
    install_requires=[
        # the given stack: web framework, admin back-office, event loop, MongoDB
        "appier>=1.46,<2",
        "appier_extras>=0.26,<1",
        # templates of the /admin back-office pages (appier_extras renders Jinja)
        "jinja2>=3,<4",
        "netius>=1.64,<2",
        "pymongo>=4.10,<5",
        # RFC 6455 framing as a sans-I/O library instead of a hand-written parser
        "wsproto>=1.2,<2",
        # the embedded store: SQLite with a pymongo-like API (no server to install)
        "neosqlite>=1.17,<2",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "websockets>=13,<18",
            "requests>=2.31,<3",
            # drives Debian's /usr/bin/chromium; never downloads a browser
            "playwright>=1.45,<2",
            # the official Pusher server SDK, a client of the Pusher HTTP API
            "pusher>=3.3,<4",
            # encrypts private-encrypted- test events as a Pusher back end does
            "PyNaCl>=1.5,<2",
        ],
    },
    entry_points={"console_scripts": ["pushi = pushi.base.state:main"]},
)
