"""Telegram links, received updates and pending confirmations (killswitch/models/telegram.py)."""

from __future__ import annotations

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    # On 0004: 0005 is another piece of work landing at the same time; the lead merges the graph.

    dependencies = [
        ('killswitch', '0004_notifications'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='TelegramLink',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('telegram_user_id', models.PositiveBigIntegerField(help_text="The person's numeric Telegram user id (the bot tells it on /start).", unique=True)),
                ('linked_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('linked_by', models.CharField(help_text='Who linked it: a user, or cli:<login>.', max_length=150)),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='telegram_link', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'Telegram link',
                'ordering': ['user__username'],
            },
        ),
        migrations.CreateModel(
            name='TelegramUpdate',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('bot_id', models.BigIntegerField()),
                ('update_id', models.BigIntegerField()),
                ('chat_id', models.BigIntegerField(blank=True, null=True)),
                ('telegram_user_id', models.BigIntegerField(blank=True, null=True)),
                ('message_id', models.BigIntegerField(blank=True, null=True)),
                ('text', models.TextField(blank=True, default='', help_text="The message text or the button's data.")),
                ('sent_at', models.DateTimeField(blank=True, help_text="The message's date (Telegram's clock).", null=True)),
                ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('state', models.CharField(choices=[('received', 'Received, not acted on yet'), ('acting', 'Service call in progress'), ('acted', 'Service answered, reply not confirmed'), ('done', 'Done')], default='received', max_length=16)),
                ('actor_user_id', models.BigIntegerField(blank=True, null=True)),
                ('acting_at', models.DateTimeField(blank=True, null=True)),
                ('seq_before', models.PositiveBigIntegerField(blank=True, null=True)),
                ('event_seq', models.PositiveBigIntegerField(blank=True, null=True)),
                ('reply', models.TextField(blank=True, default='')),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
            ],
            options={
                'ordering': ['-received_at', '-id'],
                'indexes': [models.Index(fields=['bot_id', 'state'], name='telegramupdate_bot_state')],
                'constraints': [models.UniqueConstraint(fields=('bot_id', 'update_id'), name='telegramupdate_bot_update_unique')],
            },
        ),
        migrations.CreateModel(
            name='TelegramConfirmation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('token', models.CharField(help_text="In the buttons' callback data.", max_length=32, unique=True)),
                ('action', models.CharField(help_text='activate (kill) or deactivate (resume).', max_length=16)),
                ('level', models.CharField(max_length=16)),
                ('scope', models.CharField(max_length=80)),
                ('reason', models.TextField(blank=True, default='')),
                ('telegram_user_id', models.BigIntegerField()),
                ('chat_id', models.BigIntegerField()),
                ('request_message_id', models.BigIntegerField(blank=True, null=True)),
                ('prompt_message_id', models.BigIntegerField(blank=True, null=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('expires_at', models.DateTimeField()),
                ('state', models.CharField(choices=[('pending', 'Waiting for the typed word'), ('confirmed', 'Confirmed'), ('refused', 'Wrong word'), ('expired', 'Not confirmed in time'), ('cancelled', 'Cancelled'), ('superseded', 'Replaced by a newer request')], default='pending', max_length=16)),
                ('resolved_at', models.DateTimeField(blank=True, null=True)),
                ('event_seq', models.PositiveBigIntegerField(blank=True, null=True)),
                ('detail', models.TextField(blank=True, default='')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['chat_id', 'telegram_user_id', 'state'], name='telegramconf_chat_user'), models.Index(fields=['state', 'expires_at'], name='telegramconf_state_expires')],
            },
        ),
    ]
