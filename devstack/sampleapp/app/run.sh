#!/bin/sh
echo "$(cat /app/greeting.txt) from the dchain sample app $(cat /app/VERSION), $(cat /app/arch.txt)"
