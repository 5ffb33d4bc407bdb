FROM busybox
COPY app.txt /app.txt
