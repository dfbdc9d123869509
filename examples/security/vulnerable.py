"""Obvious weaknesses, for the scanner to find. Do not copy any of this."""

import hashlib
import pickle
import sqlite3
import subprocess

import yaml

DATABASE_PASSWORD = "hunter2"


def run_command(user_input):
    # Command injection: the shell parses whatever the user sent.
    return subprocess.call("ls " + user_input, shell=True)


def evaluate(expression):
    return eval(expression)


def find_user(connection: sqlite3.Connection, name):
    # SQL injection: the name is pasted into the query.
    return connection.execute("SELECT * FROM users WHERE name = '" + name + "'").fetchall()


def load_session(blob):
    return pickle.loads(blob)


def load_config(text):
    return yaml.load(text)


def fingerprint(password):
    return hashlib.md5(password.encode()).hexdigest()


print(fingerprint(DATABASE_PASSWORD))
