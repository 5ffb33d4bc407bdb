#!/bin/sh
cat "$MESSAGE_FILE"
