"""Notification deliveries and their attempts (killswitch/notification_models.py)."""

from __future__ import annotations

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    # Only the notification models: 0003_clients belongs to the client library work.

    dependencies = [
        ('killswitch', '0003_clients'),
    ]

    operations = [
        migrations.CreateModel(
            name='Notification',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('channel', models.CharField(help_text='Stable channel id from the registry, e.g. telegram, apprise:1a2b3c4d5e6f.', max_length=64)),
                ('kind', models.CharField(help_text='Transport kind: telegram, apprise.', max_length=16)),
                ('target', models.CharField(blank=True, default='', help_text='Where it goes, secrets masked.', max_length=300)),
                ('title', models.CharField(max_length=200)),
                ('body', models.TextField()),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('retrying', 'Retrying'), ('sent', 'Sent'), ('failed', 'Failed')], default='pending', max_length=16)),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('last_error', models.TextField(blank=True, default='')),
                ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ('sent_at', models.DateTimeField(blank=True, null=True)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('event', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='notifications', to='killswitch.event')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='NotificationAttempt',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField()),
                ('at', models.DateTimeField(default=django.utils.timezone.now)),
                ('ok', models.BooleanField(default=False)),
                ('permanent', models.BooleanField(default=False, help_text='The error says retrying cannot help.')),
                ('error', models.TextField(blank=True, default='')),
                ('duration_ms', models.PositiveIntegerField(default=0)),
                ('notification', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attempt_rows', to='killswitch.notification')),
            ],
            options={
                'ordering': ['notification_id', 'number'],
            },
        ),
        migrations.AddIndex(
            model_name='notification',
            index=models.Index(fields=['status', 'created_at'], name='notification_status_created'),
        ),
        migrations.AddConstraint(
            model_name='notification',
            constraint=models.UniqueConstraint(fields=('event', 'channel'), name='notification_event_channel_unique'),
        ),
        migrations.AddConstraint(
            model_name='notificationattempt',
            constraint=models.UniqueConstraint(fields=('notification', 'number'), name='notification_attempt_unique'),
        ),
    ]
