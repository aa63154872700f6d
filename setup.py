from setuptools import setup

setup()  # configuration in setup.cfg
